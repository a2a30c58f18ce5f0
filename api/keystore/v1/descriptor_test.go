package keystorev1_test

// The compatibility test of keystore.v1: the published descriptors are held
// against a committed snapshot (testdata/keystore.v1.descriptor, a
// FileDescriptorSet in protobuf text format). Every message, field, enum
// value, service and method of the snapshot must still exist with the same
// number, name, type, type name and label; additions are allowed and
// reported. After an intended addition, rewrite the snapshot with
//
//	go test ./api/keystore/v1 -run TestDescriptorSnapshot -update

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	keystorev1 "github.com/nexus-os/keystored/api/keystore/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/keystore.v1.descriptor from the current descriptors")

const snapshotPath = "testdata/keystore.v1.descriptor"

// current returns keystore.proto's descriptor as a FileDescriptorSet.
func current() *descriptorpb.FileDescriptorSet {
	return &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(keystorev1.File_keystore_proto),
	}}
}

func TestDescriptorSnapshot(t *testing.T) {
	cur := current()
	if *update {
		out, err := prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(cur)
		if err != nil {
			t.Fatal(err)
		}
		header := "# keystore.v1 published descriptors (FileDescriptorSet, protobuf text format).\n" +
			"# Checked by descriptor_test.go; rewrite with: go test ./api/keystore/v1 -run TestDescriptorSnapshot -update\n"
		if err := os.MkdirAll(filepath.Dir(snapshotPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(snapshotPath, append([]byte(header), out...), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", snapshotPath)
	}
	data, err := os.ReadFile(snapshotPath)
	if err != nil {
		t.Fatalf("reading the snapshot: %v (create it with -update)", err)
	}
	var snap descriptorpb.FileDescriptorSet
	if err := prototext.Unmarshal(data, &snap); err != nil {
		t.Fatalf("parsing %s: %v", snapshotPath, err)
	}
	if len(snap.GetFile()) == 0 {
		t.Fatalf("%s holds no file", snapshotPath)
	}
	broken, added := compareSets(&snap, cur)
	for _, a := range added {
		t.Logf("added (allowed; run with -update to record it): %s", a)
	}
	for _, b := range broken {
		t.Errorf("incompatible change: %s", b)
	}
}

// TestDescriptorCheckCatchesBreaks: mutated copies of the current
// descriptors must each fail the comparison.
func TestDescriptorCheckCatchesBreaks(t *testing.T) {
	msg := func(fd *descriptorpb.FileDescriptorProto, name string) *descriptorpb.DescriptorProto {
		for _, m := range fd.GetMessageType() {
			if m.GetName() == name {
				return m
			}
		}
		t.Fatalf("no message %s", name)
		return nil
	}
	field := func(m *descriptorpb.DescriptorProto, name string) *descriptorpb.FieldDescriptorProto {
		for _, f := range m.GetField() {
			if f.GetName() == name {
				return f
			}
		}
		t.Fatalf("no field %s.%s", m.GetName(), name)
		return nil
	}
	mutations := map[string]func(fd *descriptorpb.FileDescriptorProto){
		"field removed": func(fd *descriptorpb.FileDescriptorProto) {
			m := msg(fd, "SignRequest")
			m.Field = m.Field[1:]
		},
		"field renumbered": func(fd *descriptorpb.FileDescriptorProto) {
			field(msg(fd, "SignRequest"), "message").Number = proto.Int32(9)
		},
		"field renamed": func(fd *descriptorpb.FileDescriptorProto) {
			field(msg(fd, "SignRequest"), "message").Name = proto.String("msg")
		},
		"field retyped": func(fd *descriptorpb.FileDescriptorProto) {
			field(msg(fd, "VerifyRequest"), "version").Type = descriptorpb.FieldDescriptorProto_TYPE_UINT32.Enum()
		},
		"message type changed": func(fd *descriptorpb.FileDescriptorProto) {
			field(msg(fd, "CreateKeyResponse"), "key").TypeName = proto.String(".keystore.v1.KeyVersion")
		},
		"label changed": func(fd *descriptorpb.FileDescriptorProto) {
			field(msg(fd, "KeyMetadata"), "uses").Label = descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
		},
		"message removed": func(fd *descriptorpb.FileDescriptorProto) {
			var keep []*descriptorpb.DescriptorProto
			for _, m := range fd.GetMessageType() {
				if m.GetName() != "ErrorDetail" {
					keep = append(keep, m)
				}
			}
			fd.MessageType = keep
		},
		"enum value renumbered": func(fd *descriptorpb.FileDescriptorProto) {
			fd.GetEnumType()[0].GetValue()[1].Number = proto.Int32(7)
		},
		"enum value removed": func(fd *descriptorpb.FileDescriptorProto) {
			e := fd.GetEnumType()[1]
			e.Value = e.Value[:len(e.Value)-1]
		},
		"method removed": func(fd *descriptorpb.FileDescriptorProto) {
			for _, s := range fd.GetService() {
				if s.GetName() == "Keys" {
					s.Method = s.Method[1:]
				}
			}
		},
		"method input changed": func(fd *descriptorpb.FileDescriptorProto) {
			for _, s := range fd.GetService() {
				if s.GetName() == "Store" {
					s.GetMethod()[0].InputType = proto.String(".keystore.v1.GetValueRequest")
				}
			}
		},
		"method made streaming": func(fd *descriptorpb.FileDescriptorProto) {
			fd.GetService()[0].GetMethod()[0].ServerStreaming = proto.Bool(true)
		},
		"service removed": func(fd *descriptorpb.FileDescriptorProto) {
			fd.Service = fd.Service[1:]
		},
		"package changed": func(fd *descriptorpb.FileDescriptorProto) {
			fd.Package = proto.String("keystore.v2")
		},
	}
	for name, mutate := range mutations {
		t.Run(name, func(t *testing.T) {
			next := current()
			mutate(next.GetFile()[0])
			broken, _ := compareSets(current(), next)
			if len(broken) == 0 {
				t.Fatal("the comparison accepted the change")
			}
			t.Logf("reported: %s", broken[0])
		})
	}
	// Additions are allowed and reported.
	next := current()
	fd := next.GetFile()[0]
	m := msg(fd, "SignRequest")
	m.Field = append(m.Field, &descriptorpb.FieldDescriptorProto{
		Name: proto.String("context"), Number: proto.Int32(99), JsonName: proto.String("context"),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum(),
	})
	fd.MessageType = append(fd.MessageType, &descriptorpb.DescriptorProto{Name: proto.String("NewThing")})
	broken, added := compareSets(current(), next)
	if len(broken) != 0 {
		t.Fatalf("additions reported as breaks: %v", broken)
	}
	if len(added) != 2 {
		t.Fatalf("additions reported: %v, want the field and the message", added)
	}
}

// compareSets returns the incompatible differences from old to cur and the
// additions.
func compareSets(old, cur *descriptorpb.FileDescriptorSet) (broken, added []string) {
	curFiles := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range cur.GetFile() {
		curFiles[f.GetName()] = f
	}
	oldNames := map[string]bool{}
	for _, of := range old.GetFile() {
		oldNames[of.GetName()] = true
		cf, ok := curFiles[of.GetName()]
		if !ok {
			broken = append(broken, "file "+of.GetName()+" removed")
			continue
		}
		b, a := compareFiles(of, cf)
		broken, added = append(broken, b...), append(added, a...)
	}
	for name := range curFiles {
		if !oldNames[name] {
			added = append(added, "file "+name)
		}
	}
	sort.Strings(broken)
	sort.Strings(added)
	return broken, added
}

func compareFiles(old, cur *descriptorpb.FileDescriptorProto) (broken, added []string) {
	bad := func(format string, args ...any) { broken = append(broken, fmt.Sprintf(format, args...)) }
	if old.GetPackage() != cur.GetPackage() {
		bad("package %q became %q", old.GetPackage(), cur.GetPackage())
	}
	if old.GetOptions().GetGoPackage() != cur.GetOptions().GetGoPackage() {
		bad("go_package %q became %q", old.GetOptions().GetGoPackage(), cur.GetOptions().GetGoPackage())
	}
	if old.GetSyntax() != cur.GetSyntax() {
		bad("syntax %q became %q", old.GetSyntax(), cur.GetSyntax())
	}
	prefix := "." + old.GetPackage()
	oldMsgs, curMsgs := map[string]*descriptorpb.DescriptorProto{}, map[string]*descriptorpb.DescriptorProto{}
	oldEnums, curEnums := map[string]*descriptorpb.EnumDescriptorProto{}, map[string]*descriptorpb.EnumDescriptorProto{}
	collect(prefix, old.GetMessageType(), old.GetEnumType(), oldMsgs, oldEnums)
	collect("."+cur.GetPackage(), cur.GetMessageType(), cur.GetEnumType(), curMsgs, curEnums)

	for name, om := range oldMsgs {
		cm, ok := curMsgs[name]
		if !ok {
			bad("message %s removed", name)
			continue
		}
		curFields := map[int32]*descriptorpb.FieldDescriptorProto{}
		curByName := map[string]int32{}
		for _, f := range cm.GetField() {
			curFields[f.GetNumber()] = f
			curByName[f.GetName()] = f.GetNumber()
		}
		oldNums := map[int32]bool{}
		for _, of := range om.GetField() {
			oldNums[of.GetNumber()] = true
			where := fmt.Sprintf("field %s.%s = %d", name, of.GetName(), of.GetNumber())
			cf, ok := curFields[of.GetNumber()]
			if !ok {
				if n, renamed := curByName[of.GetName()]; renamed {
					bad("%s renumbered to %d", where, n)
				} else {
					bad("%s removed", where)
				}
				continue
			}
			if cf.GetName() != of.GetName() {
				bad("%s renamed to %s", where, cf.GetName())
			}
			if cf.GetType() != of.GetType() {
				bad("%s changed type %v → %v", where, of.GetType(), cf.GetType())
			}
			if cf.GetTypeName() != of.GetTypeName() {
				bad("%s changed type name %s → %s", where, of.GetTypeName(), cf.GetTypeName())
			}
			if cf.GetLabel() != of.GetLabel() {
				bad("%s changed label %v → %v", where, of.GetLabel(), cf.GetLabel())
			}
			if cf.GetJsonName() != of.GetJsonName() {
				bad("%s changed JSON name %s → %s", where, of.GetJsonName(), cf.GetJsonName())
			}
			if (cf.OneofIndex == nil) != (of.OneofIndex == nil) {
				bad("%s moved into or out of a oneof", where)
			}
		}
		for _, cf := range cm.GetField() {
			if !oldNums[cf.GetNumber()] {
				added = append(added, fmt.Sprintf("field %s.%s = %d", name, cf.GetName(), cf.GetNumber()))
			}
		}
	}
	for name := range curMsgs {
		if _, ok := oldMsgs[name]; !ok {
			added = append(added, "message "+name)
		}
	}

	for name, oe := range oldEnums {
		ce, ok := curEnums[name]
		if !ok {
			bad("enum %s removed", name)
			continue
		}
		curVals := map[string]int32{}
		for _, v := range ce.GetValue() {
			curVals[v.GetName()] = v.GetNumber()
		}
		oldVals := map[string]bool{}
		for _, ov := range oe.GetValue() {
			oldVals[ov.GetName()] = true
			n, ok := curVals[ov.GetName()]
			switch {
			case !ok:
				bad("enum value %s.%s = %d removed", name, ov.GetName(), ov.GetNumber())
			case n != ov.GetNumber():
				bad("enum value %s.%s renumbered %d → %d", name, ov.GetName(), ov.GetNumber(), n)
			}
		}
		for _, cv := range ce.GetValue() {
			if !oldVals[cv.GetName()] {
				added = append(added, fmt.Sprintf("enum value %s.%s = %d", name, cv.GetName(), cv.GetNumber()))
			}
		}
	}
	for name := range curEnums {
		if _, ok := oldEnums[name]; !ok {
			added = append(added, "enum "+name)
		}
	}

	curSvcs := map[string]*descriptorpb.ServiceDescriptorProto{}
	for _, s := range cur.GetService() {
		curSvcs[s.GetName()] = s
	}
	oldSvcs := map[string]bool{}
	for _, osvc := range old.GetService() {
		oldSvcs[osvc.GetName()] = true
		cs, ok := curSvcs[osvc.GetName()]
		if !ok {
			bad("service %s removed", osvc.GetName())
			continue
		}
		curMethods := map[string]*descriptorpb.MethodDescriptorProto{}
		for _, m := range cs.GetMethod() {
			curMethods[m.GetName()] = m
		}
		oldMethods := map[string]bool{}
		for _, om := range osvc.GetMethod() {
			oldMethods[om.GetName()] = true
			where := "method " + osvc.GetName() + "." + om.GetName()
			cm, ok := curMethods[om.GetName()]
			if !ok {
				bad("%s removed", where)
				continue
			}
			if cm.GetInputType() != om.GetInputType() || cm.GetOutputType() != om.GetOutputType() {
				bad("%s changed (%s) returns (%s) → (%s) returns (%s)", where,
					om.GetInputType(), om.GetOutputType(), cm.GetInputType(), cm.GetOutputType())
			}
			if cm.GetClientStreaming() != om.GetClientStreaming() || cm.GetServerStreaming() != om.GetServerStreaming() {
				bad("%s changed streaming", where)
			}
		}
		for _, cm := range cs.GetMethod() {
			if !oldMethods[cm.GetName()] {
				added = append(added, "method "+cs.GetName()+"."+cm.GetName())
			}
		}
	}
	for name := range curSvcs {
		if !oldSvcs[name] {
			added = append(added, "service "+name)
		}
	}
	return broken, added
}

// collect indexes messages and enums, nested ones included, by full name.
func collect(prefix string, msgs []*descriptorpb.DescriptorProto, enums []*descriptorpb.EnumDescriptorProto,
	outMsgs map[string]*descriptorpb.DescriptorProto, outEnums map[string]*descriptorpb.EnumDescriptorProto) {
	for _, e := range enums {
		outEnums[prefix+"."+e.GetName()] = e
	}
	for _, m := range msgs {
		name := prefix + "." + m.GetName()
		outMsgs[name] = m
		collect(name, m.GetNestedType(), m.GetEnumType(), outMsgs, outEnums)
	}
}
