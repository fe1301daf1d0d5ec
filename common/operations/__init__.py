"""The platform's operator console: what an admin sees and does about the framework's own records
(dead letters), knowing nothing of banking."""
