-- A month's maintenance fees are charged a chunk of accounts at a time; each chunk is recorded
-- (the range of accounts it covered, those waived included), so a chunk asked again answers from
-- the record and charges nothing.
CREATE TABLE fee_chunks (
    month            TEXT NOT NULL,
    currency         TEXT NOT NULL,
    after_account_id TEXT NOT NULL,
    last_account_id  TEXT NOT NULL,
    processed        BIGINT NOT NULL,
    charged          BIGINT NOT NULL,
    charged_minor    BIGINT NOT NULL,
    unpaid           BIGINT NOT NULL,
    PRIMARY KEY (month, currency, after_account_id)
);
