package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/appliance-image/internal/settings"
)

// maxSupport bounds support mode: it always ends by itself.
const maxSupport = 4 * time.Hour

func newConsoleCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "console",
		Short: "The console screen (on its tty): status, support mode, reboot; no login",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			in := bufio.NewReader(os.Stdin)
			tty, _ := os.Readlink("/proc/self/fd/0")
			for {
				printStatus()
				fmt.Print("\r\n[Enter] refresh   s) support mode   r) reboot\r\n> ")
				line, err := in.ReadString('\n')
				if err != nil {
					// No keyboard (a file-backed serial port): just wait.
					time.Sleep(time.Minute)
					continue
				}
				switch strings.TrimSpace(line) {
				case "s":
					supportMode(in, tty)
				case "r":
					fmt.Print("Type REBOOT to reboot: ")
					if l, _ := in.ReadString('\n'); strings.TrimSpace(l) == "REBOOT" {
						_ = exec.Command("systemctl", "reboot").Run()
					}
				}
			}
		},
	}
}

func printStatus() {
	b, err := currentBoot()
	fmt.Print("\r\n=== Gatehouse appliance ===\r\n")
	if err == nil {
		state := "good"
		if b.onTrial() {
			state = "on trial"
		}
		fmt.Printf("release %s, slot %s, boot %s\r\n", b.version, b.slot, state)
	}
	if s, err := savedSettings(); err == nil {
		fmt.Printf("address %s", s.Network.Address)
		if s.Network.Gateway != "" {
			fmt.Printf(" via %s", s.Network.Gateway)
		}
		fmt.Print("\r\n")
	} else {
		fmt.Printf("not set up: %v\r\n", err)
	}
	fp, _ := os.ReadFile(settings.RelayDataDir + "/identity/fingerprint")
	enrolled := "no"
	if _, err := os.Stat(settings.RelayDataDir + "/enrollment.pb"); err == nil {
		enrolled = "yes"
	}
	fmt.Printf("relay enrolled: %s\r\nrelay fingerprint (give it to agents): %s\r\n", enrolled, strings.TrimSpace(string(fp)))
	out, _ := exec.Command("systemctl", "is-active", "gatehouse-relay.service").Output()
	fmt.Printf("relay service: %s\r\n", strings.TrimSpace(string(out)))
}

// supportMode gives a root shell on this console for a limited time, as
// a transient unit that systemd stops when its time is up. It is logged.
func supportMode(in *bufio.Reader, tty string) {
	fmt.Print("Support mode opens a root shell on this console for a limited time.\r\n" +
		"Minutes (1-240, empty cancels): ")
	l, _ := in.ReadString('\n')
	min, err := strconv.Atoi(strings.TrimSpace(l))
	if err != nil || min < 1 || time.Duration(min)*time.Minute > maxSupport {
		fmt.Print("cancelled\r\n")
		return
	}
	fmt.Print("Type SUPPORT to confirm: ")
	if l, _ := in.ReadString('\n'); strings.TrimSpace(l) != "SUPPORT" {
		fmt.Print("cancelled\r\n")
		return
	}
	fmt.Printf("support mode for %d minutes; the shell ends by itself then (or on exit)\r\n", min)
	cmd := exec.Command("systemd-run", "--wait", "--collect", "--quiet",
		"--unit=gatehouse-support-"+strconv.FormatInt(time.Now().Unix(), 10),
		"--description=Gatehouse support mode (time-limited root shell)",
		fmt.Sprintf("--property=RuntimeMaxSec=%d", min*60),
		"--property=StandardInput=tty", "--property=StandardOutput=tty", "--property=StandardError=tty",
		"--property=TTYPath="+tty, "--property=TTYReset=yes",
		"/bin/bash", "--login")
	_ = cmd.Run()
	fmt.Print("\r\nsupport mode ended\r\n")
}
