-- An operator's action on a saga stopped FAILED_NEEDS_OPERATOR (common/saga/operator.py) that
-- needs two admins: the action the first one approved and who they are, until another carries it out.
ALTER TABLE saga_runs ADD COLUMN pending_action TEXT NOT NULL DEFAULT '';
ALTER TABLE saga_runs ADD COLUMN first_approver TEXT NOT NULL DEFAULT '';
