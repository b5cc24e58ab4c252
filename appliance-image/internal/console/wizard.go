// Package console is what an operator sees on the appliance's consoles:
// a first-boot wizard that asks for the network settings and the
// enrollment token only, then a status screen whose one escape hatch is a
// time-limited support mode. There is no login prompt.
package console

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
)

// Answers are what the wizard asked.
type Answers struct {
	Address string // "dhcp" or CIDR
	Gateway string
	DNS     []string
	Token   string
}

// Wizard asks on one console until every answer is valid. defaults is the
// image's appliance-defaults.yaml (the cloud it enrolls with); the result
// is the full appliance.yaml.
func Wizard(ctx context.Context, in io.Reader, out io.Writer, defaults []byte) ([]byte, string, error) {
	r := bufio.NewReader(in)
	ask := func(prompt string, check func(string) error) (string, error) {
		for {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			fmt.Fprint(out, prompt)
			line, err := r.ReadString('\n')
			line = strings.TrimSpace(line)
			if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
				return "", err
			}
			if cerr := check(line); cerr != nil {
				fmt.Fprintf(out, "  %v\r\n", cerr)
				continue
			}
			return line, nil
		}
	}
	fmt.Fprint(out, "\r\nGatehouse appliance: first boot setup.\r\nEverything else comes from the cloud once the relay has enrolled.\r\n\r\n")
	var a Answers
	var err error
	a.Address, err = ask("Address with prefix length (e.g. 192.0.2.10/24), or dhcp: ", func(s string) error {
		if s == "dhcp" {
			return nil
		}
		_, err := netip.ParsePrefix(s)
		if err != nil {
			return errors.New("want an address with its prefix length, like 192.0.2.10/24, or dhcp")
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if a.Address != "dhcp" {
		a.Gateway, err = ask("Default gateway (empty for none): ", func(s string) error {
			if s == "" {
				return nil
			}
			if _, err := netip.ParseAddr(s); err != nil {
				return errors.New("want an IP address")
			}
			return nil
		})
		if err != nil {
			return nil, "", err
		}
		dns, err := ask("DNS servers, separated by spaces: ", func(s string) error {
			for _, f := range strings.Fields(s) {
				if _, err := netip.ParseAddr(f); err != nil {
					return fmt.Errorf("%q is not an IP address", f)
				}
			}
			return nil
		})
		if err != nil {
			return nil, "", err
		}
		a.DNS = strings.Fields(dns)
	}
	a.Token, err = ask("Enrollment token (from the cloud console): ", func(s string) error {
		if len(s) < 8 || strings.ContainsAny(s, " \t") {
			return errors.New("want the token exactly as the cloud console shows it")
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	b, err := a.Settings(defaults)
	if err != nil {
		return nil, "", err
	}
	return b, a.Token, nil
}

// Settings puts the answers over the image's defaults and validates the
// result.
func (a Answers) Settings(defaults []byte) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(defaults, &doc); err != nil {
		return nil, fmt.Errorf("image defaults: %w", err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	net := map[string]any{"address": a.Address}
	if a.Gateway != "" {
		net["gateway"] = a.Gateway
	}
	if len(a.DNS) > 0 {
		net["dns"] = a.DNS
	}
	doc["network"] = net
	b, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if _, err := settings.Parse(b); err != nil {
		return nil, fmt.Errorf("these settings do not work with the image's defaults: %w", err)
	}
	return b, nil
}
