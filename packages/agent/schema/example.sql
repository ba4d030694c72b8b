-- Example schema shipped with Patina: a small fleet of hosts, the VMs on them and the
-- services those VMs expose. `npm start` uses it.
CREATE TABLE hosts (
  id TEXT NOT NULL PRIMARY KEY,
  region TEXT NOT NULL DEFAULT '',
  healthy INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE machines (
  id TEXT NOT NULL PRIMARY KEY,
  host_id TEXT NOT NULL DEFAULT '',
  app TEXT,
  state TEXT NOT NULL DEFAULT 'created',
  cpus INTEGER,
  memory_mb INTEGER,
  updated_at INTEGER
);
CREATE INDEX machines_by_host ON machines (host_id);

CREATE TABLE services (
  machine_id TEXT NOT NULL,
  port INTEGER NOT NULL,
  protocol TEXT NOT NULL DEFAULT 'tcp',
  healthy INTEGER,
  PRIMARY KEY (machine_id, port)
) WITHOUT ROWID;
