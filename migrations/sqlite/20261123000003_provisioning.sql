-- Locker provisioning: what a locker told us about itself, where its
-- provisioning stands, the tenant's provisioning keys, and the broker
-- accounts handed to lockers (only a hash of each secret is kept).

ALTER TABLE locker_banks ADD COLUMN model TEXT;
ALTER TABLE locker_banks ADD COLUMN firmware TEXT;
ALTER TABLE locker_banks ADD COLUMN mqtt_username TEXT;
ALTER TABLE locker_banks ADD COLUMN provisioning_error TEXT;
ALTER TABLE locker_banks ADD COLUMN provisioned_at INTEGER;
ALTER TABLE locker_banks ADD COLUMN decommissioned_at INTEGER;

-- Door and occupancy as the locker last reported them (NULL: never).
ALTER TABLE compartments ADD COLUMN door_open INTEGER;
ALTER TABLE compartments ADD COLUMN occupied INTEGER;

CREATE TABLE provisioning_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX provisioning_keys_tenant ON provisioning_keys(tenant_id);

-- One broker account per locker bank (username locker-{bank_id}, client id
-- bound to it). The embedded broker checks logins against this table; with
-- Mosquitto the account lives in its dynamic-security store as well.
CREATE TABLE broker_accounts (
    username     TEXT PRIMARY KEY,
    bank_id      TEXT NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    disabled_at  INTEGER
);

-- Secrets the server generates for itself on first use (e.g. the key that
-- derives locker passwords, so a retried registration gets the same one).
CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
