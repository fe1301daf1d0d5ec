CREATE INDEX users_enabled_admins ON users (user_id) WHERE disabled = 0 AND (',' || roles || ',') LIKE '%,admin,%';
