package client_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/nexus-os/keystored/client"
	"github.com/nexus-os/keystored/client/keyfmt"
)

// ssh.NewSignerFromSigner turns a Signer into an ssh signer whose public
// key is keyfmt's authorized_keys key and whose signatures verify.
func TestSignerSSH(t *testing.T) {
	_, _, signers := newAlgSigners(t)
	data := []byte("ssh session identifier and request")
	for _, tt := range []struct {
		alg     client.Algorithm
		keyType string
		sigAlg  string // the ssh signature algorithm asked for; "" the default
	}{
		{client.Ed25519, ssh.KeyAlgoED25519, ""},
		{client.ECDSAP256, ssh.KeyAlgoECDSA256, ""},
		{client.ECDSAP384, ssh.KeyAlgoECDSA384, ""},
		{client.RSA2048PKCS1, ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA256},
	} {
		s := signers[tt.alg]
		sshSigner, err := ssh.NewSignerFromSigner(s)
		if err != nil {
			t.Fatalf("%s: NewSignerFromSigner: %v", tt.alg, err)
		}
		want, err := keyfmt.SSHPublicKey(s.KeyVersion())
		if err != nil {
			t.Fatal(err)
		}
		if got := sshSigner.PublicKey(); got.Type() != tt.keyType || !bytes.Equal(got.Marshal(), want.Marshal()) {
			t.Fatalf("%s: ssh public key %s differs from keyfmt's %s", tt.alg, got.Type(), want.Type())
		}
		var sig *ssh.Signature
		if tt.sigAlg == "" {
			sig, err = sshSigner.Sign(nil, data)
		} else {
			// What an ssh client does after negotiating the algorithm.
			restricted, rerr := ssh.NewSignerWithAlgorithms(sshSigner.(ssh.AlgorithmSigner), []string{tt.sigAlg})
			if rerr != nil {
				t.Fatal(rerr)
			}
			sig, err = restricted.SignWithAlgorithm(nil, data, tt.sigAlg)
		}
		if err != nil {
			t.Fatalf("%s: ssh Sign: %v", tt.alg, err)
		}
		if tt.sigAlg != "" && sig.Format != tt.sigAlg {
			t.Errorf("%s: signature format %s, want %s", tt.alg, sig.Format, tt.sigAlg)
		}
		if err := want.Verify(data, sig); err != nil {
			t.Errorf("%s: the ssh signature does not verify: %v", tt.alg, err)
		}
		if err := want.Verify([]byte("other"), sig); err == nil {
			t.Errorf("%s: the ssh signature verifies other data", tt.alg)
		}
	}
	// ssh-rsa (SHA-1), ssh's default for an RSA key, and rsa-sha2-512 are
	// not what a keystored RSA key signs.
	sshSigner, err := ssh.NewSignerFromSigner(signers[client.RSA2048PKCS1])
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{ssh.KeyAlgoRSA, ssh.KeyAlgoRSASHA512} {
		if _, err := sshSigner.(ssh.AlgorithmSigner).SignWithAlgorithm(nil, data, alg); !errors.Is(err, client.ErrInvalid) {
			t.Errorf("SignWithAlgorithm(%s) = %v, want ErrInvalid", alg, err)
		}
	}
}

// A whole ssh handshake with keystored keys as the server's host key
// and the client's user key (x/crypto's client and server over a pipe).
func TestSignerSSHHandshake(t *testing.T) {
	_, _, signers := newAlgSigners(t)
	for _, alg := range []client.Algorithm{client.Ed25519, client.ECDSAP256, client.ECDSAP384, client.RSA2048PKCS1} {
		sshSigner, err := ssh.NewSignerFromSigner(signers[alg])
		if err != nil {
			t.Fatal(err)
		}
		if alg == client.RSA2048PKCS1 {
			if sshSigner, err = ssh.NewSignerWithAlgorithms(sshSigner.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSASHA256}); err != nil {
				t.Fatal(err)
			}
		}
		pub := sshSigner.PublicKey()
		srvConf := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(k.Marshal(), pub.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		}}
		srvConf.AddHostKey(sshSigner)
		cliConf := &ssh.ClientConfig{User: "u", Auth: []ssh.AuthMethod{ssh.PublicKeys(sshSigner)}, HostKeyCallback: ssh.FixedHostKey(pub)}
		a, b := socketPair(t) // buffered: both ssh sides write their version first
		errc := make(chan error, 1)
		go func() {
			conn, chans, reqs, err := ssh.NewServerConn(a, srvConf)
			if err == nil {
				go ssh.DiscardRequests(reqs)
				go func() {
					for ch := range chans {
						_ = ch.Reject(ssh.Prohibited, "no channels") // the test opens none
					}
				}()
				err = conn.Wait()
				if errors.Is(err, io.EOF) {
					err = nil
				}
			}
			errc <- err
		}()
		conn, chans, reqs, err := ssh.NewClientConn(b, "keystored.test", cliConf)
		if err != nil {
			t.Fatalf("%s: ssh handshake: %v", alg, err)
		}
		go ssh.DiscardRequests(reqs)
		go func() {
			for range chans {
			}
		}()
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
		if err := <-errc; err != nil {
			t.Errorf("%s: ssh server: %v", alg, err)
		}
	}
}

// socketPair returns the two ends of a Unix stream socket pair.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() }) // already closed by the test, or not needed
		conns[i] = c
	}
	return conns[0], conns[1]
}
