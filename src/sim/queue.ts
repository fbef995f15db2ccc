/**
 * The simulator's event queue: a binary min-heap over parallel typed arrays, ordered by
 * (time, insertion sequence), so events at the same virtual time run in the order they were
 * scheduled and a run is deterministic. Entries are never removed in the middle: a stale entry
 * carries an old version number and is skipped by its consumer.
 *
 * @module
 */

/** A min-heap of `(time, kind, target, version)` events. */
export class EventQueue {
  #time = new Float64Array(1024);
  #seq = new Float64Array(1024);
  #kind = new Int32Array(1024);
  #target = new Int32Array(1024);
  #ver = new Float64Array(1024);
  #size = 0;
  #nextSeq = 0;

  /** Popped event's time. */
  time = 0;
  /** Popped event's kind. */
  kind = 0;
  /** Popped event's target. */
  target = 0;
  /** Popped event's version. */
  ver = 0;

  /** Number of queued entries (stale ones included). */
  get size(): number {
    return this.#size;
  }

  /** Time of the earliest entry (Infinity when empty). */
  peekTime(): number {
    return this.#size > 0 ? this.#time[0] : Infinity;
  }

  /** Queues an event. */
  push(time: number, kind: number, target: number, ver: number): void {
    if (this.#size === this.#time.length) this.#grow();
    let i = this.#size++;
    const seq = this.#nextSeq++;
    const T = this.#time, S = this.#seq, K = this.#kind, G = this.#target, V = this.#ver;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (T[p] < time || (T[p] === time && S[p] < seq)) break;
      T[i] = T[p];
      S[i] = S[p];
      K[i] = K[p];
      G[i] = G[p];
      V[i] = V[p];
      i = p;
    }
    T[i] = time;
    S[i] = seq;
    K[i] = kind;
    G[i] = target;
    V[i] = ver;
  }

  /** Removes the earliest event into `time`, `kind`, `target`, `ver`; false when empty. */
  pop(): boolean {
    if (this.#size === 0) return false;
    const T = this.#time, S = this.#seq, K = this.#kind, G = this.#target, V = this.#ver;
    this.time = T[0];
    this.kind = K[0];
    this.target = G[0];
    this.ver = V[0];
    const n = --this.#size;
    if (n === 0) return true;
    const t = T[n], s = S[n], k = K[n], g = G[n], v = V[n];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      const r = c + 1;
      if (r < n && (T[r] < T[c] || (T[r] === T[c] && S[r] < S[c]))) c = r;
      if (t < T[c] || (t === T[c] && s < S[c])) break;
      T[i] = T[c];
      S[i] = S[c];
      K[i] = K[c];
      G[i] = G[c];
      V[i] = V[c];
      i = c;
    }
    T[i] = t;
    S[i] = s;
    K[i] = k;
    G[i] = g;
    V[i] = v;
    return true;
  }

  #grow(): void {
    const n = this.#time.length * 2;
    const f = (a: Float64Array) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    const g = (a: Int32Array) => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    this.#time = f(this.#time);
    this.#seq = f(this.#seq);
    this.#ver = f(this.#ver);
    this.#kind = g(this.#kind);
    this.#target = g(this.#target);
  }
}
