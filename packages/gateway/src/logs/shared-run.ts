/** One run of a {@link SharedRun}: `issued` settles once its request left (the mark was appended), `done` with its answer. */
export interface Run<T> {
  issued: Promise<unknown>;
  done: Promise<T>;
}

/**
 * One request to the broker serving many callers: a mark appended to a log
 * tells every caller that asked before it was appended where the log ends.
 * While a run is being issued, callers wait for the next one, which is
 * issued once the current one left; every caller that comes meanwhile
 * shares it. A storm of subscribers costs one mark per broker round trip,
 * not one each.
 */
export class SharedRun<T> {
  private issuing: Promise<unknown> = Promise.resolve();
  private next: Promise<T> | undefined;

  constructor(private readonly start: () => Run<T>) {}

  /** Resolves with the answer of a run issued after this call. */
  call(): Promise<T> {
    if (this.next !== undefined) return this.next;
    const next = this.issuing.then(() => {
      // Callers from now on need a run issued after them.
      this.next = undefined;
      const run = this.start();
      this.issuing = run.issued.catch(() => undefined);
      return run.done;
    });
    this.next = next;
    return next;
  }
}
