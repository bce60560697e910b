// Pod IPs on loopback: Linux routes all of 127.0.0.0/8 to lo, so each pod can bind its own address.
export class LoopbackIpPool {
  private readonly used = new Set<number>();

  /** 127.0.0.1 stays the node's own address; pods get 127.0.0.2 onwards. */
  allocate(): string {
    for (let n = 2; n < 254 * 256; n++) {
      if (n % 256 === 0 || n % 256 === 255) continue;
      if (!this.used.has(n)) {
        this.used.add(n);
        return `127.0.${Math.floor(n / 256)}.${n % 256}`;
      }
    }
    throw new Error('loopback pod IP range 127.0.0.2-127.0.253.254 is exhausted');
  }

  release(ip: string): void {
    const parts = ip.split('.').map(Number);
    if (parts.length === 4 && parts[0] === 127 && parts[1] === 0) this.used.delete((parts[2] ?? 0) * 256 + (parts[3] ?? 0));
  }
}
