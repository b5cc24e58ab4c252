package harness

import "fmt"

// SetDNS sets one key of the relay's dns: section (RelayOptions.DNS must be
// on); it takes effect at the next Restart.
func (r *Relay) SetDNS(key string, value any) error {
	d, ok := r.conf["dns"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: no dns section (RelayOptions.DNS is off)", r.Name)
	}
	d[key] = value
	return writeYAML(r.Config, r.conf)
}
