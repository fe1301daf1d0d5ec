-- Maker-checker: who applied, and who approved first a loan that needs two approvers.
ALTER TABLE loans ADD COLUMN applied_by TEXT NOT NULL DEFAULT '';
ALTER TABLE loans ADD COLUMN first_approver TEXT NOT NULL DEFAULT '';
