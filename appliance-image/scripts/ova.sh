#!/bin/sh
# ova.sh RAW OUT.ova RELEASE: an OVA for VMware (and VirtualBox): the disk
# as a stream-optimized VMDK, an OVF asking for UEFI firmware, and OVF
# properties for the settings and the enrollment token (first boot reads
# them through VMware tools, docs/appliance.md).
set -eu
raw=$1 out=$2 release=$3
work=$(mktemp -d "$(dirname "$out")/ova.XXXXXX")
trap 'rm -rf "$work"' EXIT
name=gatehouse-appliance
qemu-img convert -O vmdk -o subformat=streamOptimized "$raw" "$work/$name-disk1.vmdk"
cap=$(stat -c %s "$raw")
size=$(stat -c %s "$work/$name-disk1.vmdk")
cat >"$work/$name.ovf" <<OVF
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References><File ovf:href="$name-disk1.vmdk" ovf:id="file1" ovf:size="$size"/></References>
  <DiskSection><Info>Virtual disk</Info>
    <Disk ovf:capacity="$cap" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <NetworkSection><Info>The DMZ network agents reach</Info><Network ovf:name="DMZ"><Description>DMZ</Description></Network></NetworkSection>
  <VirtualSystem ovf:id="$name">
    <Info>Gatehouse relay appliance</Info>
    <Name>$name</Name>
    <ProductSection ovf:required="false">
      <Info>First-boot settings (docs/appliance.md)</Info>
      <Product>Gatehouse appliance</Product><Version>$release</Version>
      <Property ovf:key="gatehouse.appliance" ovf:type="string" ovf:userConfigurable="true" ovf:value="">
        <Label>Settings</Label><Description>appliance.yaml, base64</Description></Property>
      <Property ovf:key="gatehouse.enrollment-token" ovf:type="string" ovf:userConfigurable="true" ovf:password="true" ovf:value="">
        <Label>Enrollment token</Label><Description>One-time relay enrollment token from the cloud</Description></Property>
    </ProductSection>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest"><Info>Debian 12</Info></OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>2 vCPU, 2 GB</Info>
      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType></System>
      <Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:ElementName>2 vCPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>2048 MB</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>2048</rasd:VirtualQuantity></Item>
      <Item><rasd:ElementName>SATA</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType><rasd:ResourceType>20</rasd:ResourceType></Item>
      <Item><rasd:AddressOnParent>0</rasd:AddressOnParent><rasd:ElementName>disk0</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:AutomaticAllocation>true</rasd:AutomaticAllocation><rasd:Connection>DMZ</rasd:Connection>
        <rasd:ElementName>eth0</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType><rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item ovf:required="false"><rasd:ElementName>serial0</rasd:ElementName><rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceType>21</rasd:ResourceType></Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
OVF
(cd "$work" && for f in "$name.ovf" "$name-disk1.vmdk"; do echo "SHA256($f)= $(sha256sum "$f" | cut -d' ' -f1)"; done >"$name.mf")
# The OVF must come first in the archive.
tar -C "$work" -cf "$out" "$name.ovf" "$name.mf" "$name-disk1.vmdk"
