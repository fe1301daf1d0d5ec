-- A transfer records whose authority posted it, through which contexts ("usr_1 via payment"),
-- as a hold does (placed_by). Earlier transfers have none.
ALTER TABLE transfers ADD COLUMN actor TEXT NOT NULL DEFAULT '';
