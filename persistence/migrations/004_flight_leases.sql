-- Ownership leases: at most one process at a time writes a flight's tickets.
-- A process takes a flight's lease before it loads the flight, renews it
-- while its actor runs, and releases it when the actor stops. Every batch
-- that process commits updates its own lease row, matching the epoch and
-- owner it took, in the same transaction: a process that lost the lease
-- matches no row and its batch is rolled back. Times come from the
-- database clock, so the processes' clocks need not agree.

CREATE TABLE flight_leases (
    flight_id   bigint      PRIMARY KEY REFERENCES flights (id),
    -- Process id chosen at start (host, pid, random suffix); never reused.
    owner       text        NOT NULL CHECK (length(owner) BETWEEN 1 AND 200),
    -- host:port of the owner's internal listener, where other processes
    -- forward the flight's commands.
    address     text        NOT NULL CHECK (length(address) BETWEEN 1 AND 300),
    -- Fencing token: grows by one with every acquisition, never reused.
    epoch       bigint      NOT NULL CHECK (epoch > 0),
    -- The lease is free once this passes; a release sets it to now().
    expires_at  timestamptz NOT NULL
);
