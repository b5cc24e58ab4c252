package daemon

// Readiness beyond "started" (docs/operations.md, "Health"). Each condition
// is a named check of its own, so /readyz?exclude=NAME can leave it out.

// healthChecks registers the relay's named readiness checks.
func (d *Daemon) healthChecks() {
	d.admin.AddCheck("cloud", d.cloudReady)
}

// cloudReady fails while the cloud is unreachable. The relay then still
// accepts its agents and spools their data (acknowledged, delivered when
// the cloud is back), but it cannot register new agents it has no key
// hashes for, deliver commands, or hand receipts "delivered": it is not
// doing its whole job, and /readyz says so with the cause.
func (d *Daemon) cloudReady() error { return d.up.Unreachable() }
