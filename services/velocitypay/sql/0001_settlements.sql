-- The network's own record of what it accepted: it survives a restart of the simulator, as a
-- real network's would, so that a member bank can reconcile against it.
CREATE TABLE settlements (
    seq               {serial_pk},
    payment_id        TEXT NOT NULL UNIQUE,
    network_reference TEXT NOT NULL,
    status            TEXT NOT NULL,
    reject_reason     TEXT NOT NULL,
    currency          TEXT NOT NULL,
    amount            TEXT NOT NULL
);
