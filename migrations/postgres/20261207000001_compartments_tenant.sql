-- A tenant's compartments in one read (the banks list), not one per bank.
CREATE INDEX compartments_tenant ON compartments (tenant_id, number);
