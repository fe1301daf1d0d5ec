ALTER TABLE customers ADD COLUMN relationship_manager_id TEXT NOT NULL DEFAULT '';
CREATE INDEX customers_relationship_manager ON customers (relationship_manager_id, seq);
