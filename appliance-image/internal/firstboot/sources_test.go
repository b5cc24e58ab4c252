package firstboot

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

// smbios11 is a raw SMBIOS type 11 structure holding strs.
func smbios11(strs ...string) []byte {
	b := []byte{11, 5, 0, 0, byte(len(strs))}
	for _, s := range strs {
		b = append(b, s...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func TestFindOrder(t *testing.T) {
	settings := "relay: {cloud: {url: https://c}}\n"
	dmi := t.TempDir()
	os.MkdirAll(filepath.Join(dmi, "11-0"), 0o755)
	os.WriteFile(filepath.Join(dmi, "11-0", "raw"), smbios11(
		"unrelated OEM string",
		"io.systemd.credential.binary:gatehouse.appliance="+base64.StdEncoding.EncodeToString([]byte(settings)),
		"io.systemd.credential:gatehouse.enrollment-token=et-smbios",
	), 0o644)
	creds := t.TempDir()

	s := Sources{CredDirs: []string{creds}, DMIDir: dmi}
	f, ok, err := s.Find(context.Background())
	if err != nil || !ok {
		t.Fatalf("SMBIOS: %v %v", ok, err)
	}
	if f.Source != "SMBIOS credential" || string(f.Settings) != settings || f.Token != "et-smbios" {
		t.Errorf("SMBIOS: got %+v", f)
	}

	// A credential the service manager imported wins.
	os.WriteFile(filepath.Join(creds, CredSettings), []byte(settings), 0o600)
	os.WriteFile(filepath.Join(creds, CredToken), []byte("et-cred\n"), 0o600)
	f, _, _ = s.Find(context.Background())
	if f.Token != "et-cred" || f.Source != "credential "+creds {
		t.Errorf("credential dir: got %+v", f)
	}

	// OVF properties when nothing else has the settings.
	ovf := `<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
<PropertySection><Property oe:key="gatehouse.appliance" oe:value="` + base64.StdEncoding.EncodeToString([]byte(settings)) + `"/>
<Property oe:key="gatehouse.enrollment-token" oe:value="et-ovf"/></PropertySection></Environment>`
	s = Sources{OVFEnv: func(context.Context) ([]byte, error) { return []byte(ovf), nil }}
	f, ok, err = s.Find(context.Background())
	if err != nil || !ok || f.Token != "et-ovf" || string(f.Settings) != settings {
		t.Errorf("OVF: %+v %v %v", f, ok, err)
	}

	// Nothing anywhere: the wizard's turn.
	if _, ok, err := (Sources{CredDirs: []string{t.TempDir()}}).Find(context.Background()); ok || err != nil {
		t.Errorf("empty sources: ok %v err %v, want neither", ok, err)
	}
}

func TestBadSMBIOSCredentialIsAnError(t *testing.T) {
	dmi := t.TempDir()
	os.MkdirAll(filepath.Join(dmi, "11-0"), 0o755)
	os.WriteFile(filepath.Join(dmi, "11-0", "raw"), smbios11("io.systemd.credential.binary:gatehouse.appliance=***"), 0o644)
	if _, _, err := (Sources{DMIDir: dmi}).Find(context.Background()); err == nil {
		t.Error("bad base64 in an SMBIOS credential: want an error naming it")
	}
}
