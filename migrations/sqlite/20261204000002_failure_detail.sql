-- What the locker said when an open failed (`error` of its result, or the
-- send reactor's last error), truncated to 500 characters: shown with the
-- failure reason in the API, the UI and the envelope.
ALTER TABLE open_requests ADD COLUMN failure_detail TEXT;
