import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { Logger } from './logger.js';
import { OptionError } from './options.js';

/** Where the gateway's certificate and key are: PEM files, read at start and again on each reload. */
export interface TlsFiles {
  /** The certificate, followed by its intermediates (a `fullchain.pem`). */
  cert: string;
  /** Its private key, unencrypted. */
  key: string;
}

/** A certificate and its key, read and checked. */
interface TlsPair {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate, for the log. */
  x509: X509Certificate;
}

const CERT_NAME = '--tls-cert / WARREN_TLS_CERT / tlsCert';
const KEY_NAME = '--tls-key / WARREN_TLS_KEY / tlsKey';

/**
 * Reads the certificate and key and checks that they parse and belong
 * together.
 * @throws OptionError naming the file at fault and why
 */
export function readTlsFiles(files: TlsFiles): TlsPair {
  const cert = readPem(CERT_NAME, files.cert);
  const key = readPem(KEY_NAME, files.key);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new OptionError(`${CERT_NAME}: ${files.cert} holds no PEM certificate (${(err as Error).message})`);
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(key.toString('latin1'))) {
    throw new OptionError(
      `${KEY_NAME}: ${files.key} is encrypted; Warren takes an unencrypted key (openssl pkey -in ${files.key} -out plain.pem)`,
    );
  }
  try {
    if (!x509.checkPrivateKey(createPrivateKey(key))) throw new Error('mismatch');
  } catch (err) {
    const why = (err as Error).message === 'mismatch' ? `is not the key of the certificate in ${files.cert}` : 'holds no PEM private key';
    throw new OptionError(`${KEY_NAME}: ${files.key} ${why}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new OptionError(`${CERT_NAME} and ${KEY_NAME}: OpenSSL refuses them (${(err as Error).message})`);
  }
  return { cert, key, x509 };
}

function readPem(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new OptionError(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * The gateway's own HTTPS server, serving the certificate in `files`, and
 * able to take a new one for new connections ({@link TlsServer.reload}).
 */
export class TlsServer {
  readonly server: Server;

  /** @throws OptionError for files that cannot be read or do not fit */
  constructor(
    private readonly files: TlsFiles,
    private readonly log: Logger,
    options: { maxHeaderSize: number; requireHostHeader: boolean },
  ) {
    const pair = readTlsFiles(files);
    this.server = createServer({ ...options, cert: pair.cert, key: pair.key });
    // A failed handshake (a scanner, plain HTTP on this port, a client that distrusts the certificate) ends that connection only.
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException) => log.debug('tls handshake failed', { code: err.code }));
    this.note('tls certificate loaded', pair.x509);
  }

  /**
   * Reads the files again and serves what they hold to new connections;
   * open ones keep theirs. Files that cannot be read or do not fit are
   * logged and the certificate in use stays.
   * @returns whether the new certificate is in use
   */
  reload(): boolean {
    let pair: TlsPair;
    try {
      pair = readTlsFiles(this.files);
    } catch (err) {
      this.log.error('tls reload failed; the certificate in use stays', { error: (err as Error).message });
      return false;
    }
    this.server.setSecureContext({ cert: pair.cert, key: pair.key });
    this.note('tls certificate reloaded', pair.x509);
    return true;
  }

  private note(msg: string, x509: X509Certificate): void {
    const fields = { subject: x509.subject, validTo: x509.validTo, fingerprint256: x509.fingerprint256 };
    this.log.info(msg, fields);
    if (Date.parse(x509.validTo) < Date.now()) this.log.warn('the tls certificate has expired', fields);
  }
}
