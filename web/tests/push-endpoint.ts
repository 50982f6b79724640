// A local Web Push endpoint for the browser suite, written apart from mainloop's own code so
// the two check each other: it hands out subscriptions (a P-256 key pair and a 16-byte secret,
// as a browser's push service would), checks each push's VAPID signature (RFC 8292: ES256, for
// this origin with its port, a mailto:/https: contact) and decrypts it (RFC 8291, aes128gcm)
// with Node's own crypto.
import { createECDH, createDecipheriv, createPublicKey, hkdfSync, randomBytes, verify } from "node:crypto";
import { createServer, type Server } from "node:http";

export interface Subscription { endpoint: string; keys: { p256dh: string; auth: string } }
interface Browser { ecdh: ReturnType<typeof createECDH>; auth: Buffer; received: unknown[] }

const b64url = (bytes: Buffer) => bytes.toString("base64url");

export class PushEndpoint {
  private server: Server;
  private browsers = new Map<string, Browser>();
  readonly refusals: string[] = [];
  origin = "";

  constructor() {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk) => chunks.push(chunk));
      request.on("end", () => {
        const [status, reason] = this.receive(request.url ?? "", request.headers, Buffer.concat(chunks));
        if (status !== 201) this.refusals.push(`${status} ${reason}`);
        response.writeHead(status, { "content-type": "text/plain" }).end(reason);
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.origin = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  subscribe(): Subscription {
    const ecdh = createECDH("prime256v1");
    ecdh.generateKeys();
    const auth = randomBytes(16);
    const id = randomBytes(8).toString("hex");
    this.browsers.set(id, { ecdh, auth, received: [] });
    return { endpoint: `${this.origin}/push/${id}`, keys: { p256dh: b64url(ecdh.getPublicKey()), auth: b64url(auth) } };
  }

  received(endpoint: string): unknown[] {
    return this.browsers.get(endpoint.split("/").pop() ?? "")?.received ?? [];
  }

  private receive(url: string, headers: Record<string, string | string[] | undefined>, body: Buffer): [number, string] {
    const browser = this.browsers.get(url.split("/").pop() ?? "");
    if (!browser) return [404, "no such subscription"];
    if (headers["content-encoding"] !== "aes128gcm") return [415, "Content-Encoding must be aes128gcm"];
    if (!headers.ttl) return [400, "TTL is required"];
    const vapid = this.checkVapid(String(headers.authorization ?? ""));
    if (vapid) return [401, vapid];
    try {
      browser.received.push(JSON.parse(decrypt(body, browser.ecdh, browser.auth).toString("utf8")));
      return [201, "created"];
    } catch (error) {
      return [400, `does not decrypt: ${error}`];
    }
  }

  /// Why the Authorization header is not a valid VAPID one, or null.
  private checkVapid(header: string): string | null {
    const match = /^vapid t=([^,]+), k=(.+)$/.exec(header);
    if (!match) return "Authorization must be `vapid t=…, k=…`";
    const [signed, signature] = [match[1].slice(0, match[1].lastIndexOf(".")), match[1].slice(match[1].lastIndexOf(".") + 1)];
    const point = Buffer.from(match[2], "base64url");
    const key = createPublicKey({
      key: { kty: "EC", crv: "P-256", x: b64url(point.subarray(1, 33)), y: b64url(point.subarray(33, 65)) },
      format: "jwk",
    });
    const ok = verify("sha256", Buffer.from(signed), { key, dsaEncoding: "ieee-p1363" }, Buffer.from(signature, "base64url"));
    if (!ok) return "the JWT does not verify with k";
    const claims = JSON.parse(Buffer.from(signed.split(".")[1], "base64url").toString("utf8"));
    if (claims.aud !== this.origin) return `aud must be ${this.origin}, not ${claims.aud}`;
    const now = Date.now() / 1000;
    if (!(claims.exp > now && claims.exp <= now + 86_400)) return "exp must be within a day";
    if (!/^(mailto|https):/.test(claims.sub ?? "")) return "sub must be a mailto: or https: contact";
    return null;
  }
}

/// RFC 8291 / RFC 8188: salt(16) rs(4) idlen(1) keyid(the sender's public key) ciphertext.
function decrypt(body: Buffer, ecdh: ReturnType<typeof createECDH>, auth: Buffer): Buffer {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const senderPublic = body.subarray(21, 21 + idlen);
  const ciphertext = body.subarray(21 + idlen);
  const shared = ecdh.computeSecret(senderPublic);
  const keyInfo = Buffer.concat([Buffer.from("WebPush: info\0"), ecdh.getPublicKey(), senderPublic]);
  const ikm = Buffer.from(hkdfSync("sha256", shared, auth, keyInfo, 32));
  const cek = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  const padded = Buffer.concat([decipher.update(ciphertext.subarray(0, ciphertext.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (padded[end] !== 2) throw new Error("the last record's delimiter is missing");
  return padded.subarray(0, end);
}
