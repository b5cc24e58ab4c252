package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/appliance-image/internal/slots"
)

func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen PRIVATE.pem PUBLIC.pem",
		Short: "Make the vendor's update signing key (build machine)",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			return slots.GenerateKey(args[0], args[1])
		},
	}
}

func newBundleCmd() *cobra.Command {
	var key, version, kernel, initrd, rootfs, out string
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Make a signed update bundle from a kernel, an initrd and a root file system image (build machine)",
		Args:  cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			sk, err := slots.LoadPrivateKey(key)
			if err != nil {
				return err
			}
			f, err := os.Create(out + ".tmp")
			if err != nil {
				return err
			}
			defer os.Remove(out + ".tmp")
			if err := slots.MakeBundle(f, sk, version, kernel, initrd, rootfs); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Rename(out+".tmp", out); err != nil {
				return err
			}
			fmt.Println(out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "signing key (keygen)")
	f.StringVar(&version, "version", "", "release version")
	f.StringVar(&kernel, "kernel", "", "kernel image")
	f.StringVar(&initrd, "initrd", "", "initrd")
	f.StringVar(&rootfs, "rootfs", "", "root file system image (ext4)")
	f.StringVarP(&out, "output", "o", "", "bundle file to write")
	for _, n := range []string{"key", "version", "kernel", "initrd", "rootfs", "output"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return cmd
}

func newEntryCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "entry SLOT VERSION",
		Short:  "Print a slot's systemd-boot entry (image build)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			s, err := slots.ParseSlot(args[0])
			if err != nil {
				return err
			}
			fmt.Print(slots.EntryText(s, args[1], slots.DefaultCmdline))
			return nil
		},
	}
}
