package pkcs11

import (
	"fmt"
	"os/exec"
	"testing"

	p11 "github.com/miekg/pkcs11"
)

func TestExplore(t *testing.T) {
	c := p11.New("/usr/lib/softhsm/libsofthsm2.so")
	fmt.Println(c.Initialize())
	c2 := p11.New("/usr/lib/softhsm/libsofthsm2.so")
	fmt.Println("second init:", c2.Initialize())
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "t2", "--so-pin", "1111", "--pin", "2222").CombinedOutput()
	fmt.Println(string(out), err)
	slots, _ := c.GetSlotList(true)
	for _, s := range slots {
		ti, _ := c.GetTokenInfo(s)
		fmt.Printf("slot %d label %q\n", s, ti.Label)
	}
	fmt.Println(c.Finalize(), c.Initialize())
	slots, _ = c.GetSlotList(true)
	for _, s := range slots {
		ti, _ := c.GetTokenInfo(s)
		fmt.Printf("slot %d label %q\n", s, ti.Label)
	}
	bad := p11.New("/lib/x86_64-linux-gnu/libc.so.6")
	fmt.Println("libc:", bad == nil)
	bad = p11.New("/etc/hostname")
	fmt.Println("text:", bad == nil)
}
