// The order of a model's asynchronous operations. A Node service calls predict from many requests
// at once, and code that forgets an `await` starts the next trainStep before the last one ended;
// run as they come, a training step would update the weights while another pass reads them (its
// gradient taken from a mixture of old and new weights, a micro-batch's sums mixed with another
// step's), and a save would write half of an update. So the model queues its operations in call
// order: reads (predict, embed, classify, save, saveOnnx, computeGradients) run together, an update
// (trainStep) runs alone, after every call made before it and before every call made after it.
// Calls made without awaiting each other then give what awaiting each in turn would.

import { BusyError } from '../errors.js';
import { abortReason } from './abort.js';

/** The operation's promise; a synchronous throw becomes its rejection. */
function startNow<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return operation();
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Whether an operation only reads the model or may change it. */
export type Access = 'read' | 'update';

export class OperationQueue {
  /** Settles when the last update queued has ended (resolved whether it succeeded or not). */
  private lastUpdate: Promise<void> = Promise.resolve();
  /** The reads queued since that update and not ended yet: the next update waits for them. */
  private readonly readsSince = new Set<Promise<void>>();
  /** Operations queued or running, by name, for the error of a call that cannot wait. */
  private readonly pending = new Map<string, number>();
  private updatesPending = 0;

  /**
   * Runs `operation` in its turn (see the top of the file); its result or error is the caller's.
   * With `signal` aborted by then, it does not run: the call rejects with abortReason(signal) (abort.ts).
   */
  run<T>(access: Access, name: string, operation: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const start = signal ? () => (signal.aborted ? Promise.reject(abortReason(signal)) : operation()) : operation;
    // Nothing to wait for: start now, so that the native work has begun (and holds its tensors,
    // which Tensor.set then refuses to write into) when this call returns.
    const free = access === 'read' ? this.updatesPending === 0 : this.pending.size === 0;
    const turn = free ? null : access === 'read' ? this.lastUpdate : Promise.all([this.lastUpdate, ...this.readsSince]);
    this.pending.set(name, (this.pending.get(name) ?? 0) + 1);
    if (access === 'update') this.updatesPending++;
    const started = turn ? turn.then(start) : startNow(start);
    const result = started.finally(() => {
      const left = this.pending.get(name)! - 1;
      if (left === 0) this.pending.delete(name);
      else this.pending.set(name, left);
      if (access === 'update') this.updatesPending--;
    });
    const ended: Promise<void> = result.then(
      () => undefined,
      () => undefined,
    );
    if (access === 'read') {
      this.readsSince.add(ended);
      void ended.then(() => this.readsSince.delete(ended)); // a service that only reads keeps none
    } else {
      this.lastUpdate = ended;
      this.readsSince.clear();
    }
    return result;
  }

  /** The operations queued or running, e.g. "trainStep, 2 x predict"; empty when none. */
  describePending(): string {
    return [...this.pending].map(([name, count]) => (count === 1 ? name : `${count} x ${name}`)).join(', ');
  }

  /** Throws when operations are queued or running: for a change that cannot wait its turn. */
  requireIdle(what: string): void {
    const pending = this.describePending();
    if (pending) throw new BusyError(`${what}: this model still has operations queued or running (${pending}); await them first`);
  }

  /** Throws when an update is queued or running: for a read that cannot wait its turn. */
  requireNoUpdate(what: string): void {
    if (this.updatesPending > 0) throw new BusyError(`${what}: this model still has operations queued or running (${this.describePending()}) that change its weights; await them first`);
  }
}
