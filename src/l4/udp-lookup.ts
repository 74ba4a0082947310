import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * The `lookup` given to every Switchyard dgram socket. Node resolves the address of each
 * bind, connect and unconnected send through `lookup`, by default dns.lookup, which answers
 * an IP literal on a later tick. Servers are IP literals by the time traffic flows (host
 * names are resolved once at start) and replies go to the downstream's literal address, so
 * answering literals synchronously makes a new session's bind + connect complete inside
 * `connect()` (its first datagram is sent at once, not queued), and saves a tick and a
 * closure on every reply sent through the listener socket. Anything else goes to dns.lookup.
 */
export function literalLookup(address: string, family: number | LookupOneOptions, callback: LookupCallback): void {
  const literalFamily = isIP(address);
  if (literalFamily !== 0) {
    callback(null, address, literalFamily);
    return;
  }
  dnsLookup(address, family as LookupOneOptions, callback);
}
