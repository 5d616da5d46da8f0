-- The example warehouse beside Airflow's metadata database.
CREATE DATABASE warehouse OWNER airflow;
\connect warehouse
CREATE TABLE support_tickets (ticket_id BIGINT PRIMARY KEY, body TEXT NOT NULL,
                              created_at TIMESTAMPTZ NOT NULL DEFAULT now());
INSERT INTO support_tickets (ticket_id, body)
SELECT g, CASE g % 4
    WHEN 0 THEN 'I was charged twice on invoice ' || g || ', please refund.'
    WHEN 1 THEN 'Parcel ' || g || ' is late; delivery was promised last week.'
    WHEN 2 THEN 'The kettle from order ' || g || ' arrived broken.'
    ELSE 'Password reset for account ' || g || ' does not work, I cannot log in.' END
FROM generate_series(1, 500) g;
ALTER TABLE support_tickets OWNER TO airflow;
