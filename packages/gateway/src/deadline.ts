/**
 * `work`, or a rejection with `timeout()` once `ms` have passed. What the
 * work yields after that goes to `late` (to be given back: a message to
 * requeue, a consumer to cancel), and a late failure is ignored.
 */
export function within<T>(work: Promise<T>, ms: number, timeout: () => Error, late?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(
      () => {
        done = true;
        reject(timeout());
      },
      Math.max(0, ms),
    );
    work.then(
      (value) => {
        clearTimeout(timer);
        if (!done) resolve(value);
        else late?.(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!done) reject(err);
      },
    );
  });
}
