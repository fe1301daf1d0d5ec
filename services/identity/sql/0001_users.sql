CREATE TABLE users (
    seq           {serial_pk},
    user_id       TEXT NOT NULL UNIQUE,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
