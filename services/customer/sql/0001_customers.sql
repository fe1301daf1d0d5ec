CREATE TABLE customers (
    seq                  {serial_pk},
    customer_id          TEXT NOT NULL UNIQUE,
    given_name           TEXT NOT NULL,
    family_name          TEXT NOT NULL,
    email                TEXT NOT NULL,
    phone                TEXT NOT NULL,
    date_of_birth        TEXT NOT NULL,
    document_type        TEXT NOT NULL,
    document_number      TEXT NOT NULL,
    document_country     TEXT NOT NULL,
    address_json         TEXT NOT NULL,
    kyc_status           TEXT NOT NULL,
    kyc_reasons          TEXT NOT NULL,
    kyc_checked_at       TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    version              INTEGER NOT NULL
);
CREATE UNIQUE INDEX customers_document ON customers (document_country, document_type, document_number);
CREATE INDEX customers_kyc_status ON customers (kyc_status, seq);
