/** Runs work under a named lock: in one process (KeyedMutex) or across nodes (StorageLock). */
export interface Locks {
  run<T>(key: string, fn: () => Promise<T>): Promise<T>;
}

/** Serialises async work per key inside one process (cheap: one promise chain per busy key). */
export class KeyedMutex implements Locks {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
