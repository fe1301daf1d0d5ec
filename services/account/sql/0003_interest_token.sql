ALTER TABLE interest_postings ADD COLUMN chunk_token TEXT NOT NULL DEFAULT '';
CREATE INDEX interest_postings_chunk ON interest_postings (chunk_token);
