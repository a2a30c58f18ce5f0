// seal.mjs: an independent HPKE sender (hpke-js) for keystored's interop
// test. Reads one JSON object on stdin: {kem_id, kdf_id, aead_id,
// public_key, info, aad, plaintext} (bytes as base64) and writes
// {enc, ciphertext} (base64) on stdout.
import { CipherSuite, DhkemP256HkdfSha256, HkdfSha256, Aes128Gcm, Aes256Gcm } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import { XWing } from "@hpke/hybridkem-x-wing";

const kems = { 0x0010: () => new DhkemP256HkdfSha256(), 0x0020: () => new DhkemX25519HkdfSha256(), 0x647a: () => new XWing() };
const aeads = { 0x0001: () => new Aes128Gcm(), 0x0002: () => new Aes256Gcm(), 0x0003: () => new Chacha20Poly1305() };

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const b = (s) => new Uint8Array(Buffer.from(s, "base64"));
if (!kems[req.kem_id] || req.kdf_id !== 1 || !aeads[req.aead_id]) {
  throw new Error(`unsupported suite ${req.kem_id}/${req.kdf_id}/${req.aead_id}`);
}
const suite = new CipherSuite({ kem: kems[req.kem_id](), kdf: new HkdfSha256(), aead: aeads[req.aead_id]() });
const recipientPublicKey = await suite.kem.deserializePublicKey(b(req.public_key).buffer);
const sender = await suite.createSenderContext({ recipientPublicKey, info: b(req.info).buffer });
const ct = await sender.seal(b(req.plaintext).buffer, b(req.aad).buffer);
process.stdout.write(JSON.stringify({ enc: Buffer.from(sender.enc).toString("base64"), ciphertext: Buffer.from(ct).toString("base64") }));
