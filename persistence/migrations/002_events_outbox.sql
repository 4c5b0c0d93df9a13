-- Airline events applied to flights, and the transactional outbox of
-- passenger emails written in the same transaction as the ticket changes.

CREATE TABLE flight_events (
    flight_id     bigint      NOT NULL REFERENCES flights (id),
    event         text        NOT NULL
                  CHECK (event IN ('flight_ticket_sales_completed', 'flight_canceled')),
    triggered_at  timestamptz NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flight_id, event)
);

CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flight_id        bigint      NOT NULL REFERENCES flights (id),
    passenger_id     bigint      NOT NULL REFERENCES passengers (id),
    kind             text        NOT NULL
                     CHECK (kind IN ('flight_canceled', 'reservation_released')),
    -- Ticket ids and seats the email is about, and anything else the
    -- template needs that is not in flights or passengers.
    payload          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A claim pushes this into the future; a sender that dies before
    -- marking the row leaves it due again once the claim lapses.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    -- One email per passenger per event of a flight, however often the
    -- event is replayed.
    UNIQUE (flight_id, kind, passenger_id)
);

CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
