// Type declarations for herald.js, the browser client for herald.

/** Reconnect delays, in milliseconds: attempt n waits a random time in [0, min(max, min * 2^n)). */
export interface Backoff {
  /** Ceiling of the first delay (default 500). */
  min: number;
  /** Largest ceiling (default 30000). */
  max: number;
}

/** Client-side heartbeat timings, in milliseconds. */
export interface Heartbeat {
  /** Silence after which a `ping` is sent (default 25000). */
  interval: number;
  /** How long to wait for any frame after that `ping` (default 10000). */
  timeout: number;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** A JWT sent in the `herald.bearer.<token>` subprotocol (never in the URL). */
  token?: string;
  /**
   * Returns a fresh JWT. Called for the first connection when `token` is not given,
   * after herald closed with 4102 token_expired, after an upgrade refused before open
   * (e.g. 401), and a little before the current token's `exp` to send a `refresh` frame.
   */
  getToken?: () => Promise<string>;
  /** Reconnect backoff; see {@link Backoff}. */
  backoff?: Partial<Backoff>;
  /**
   * Client-side heartbeat, in ms (default 25000 / 10000): after `interval` without a
   * frame from herald send a `ping`; when nothing arrives `timeout` later, treat the
   * socket as lost (state "closed" with code 1006, reason "heartbeat_timeout") and
   * reconnect. `false` turns it off.
   */
  heartbeat?: Partial<Heartbeat> | false;
  /** WebSocket constructor; defaults to `globalThis.WebSocket` (pass `ws` in Node 20). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

/** A notify frame, exactly as herald sent it. */
export interface Notification<T = unknown> {
  type: "notify";
  /** The group it was sent to. */
  group: string;
  /** The event type (`"message"` when the backend named none). */
  event: string;
  /** Position in the group: starts at 1, grows by one per notification. */
  offset: number;
  /** The group history's epoch; offsets are comparable only within one epoch. Absent on hubs without history. */
  epoch?: string;
  /** The JSON the backend sent. */
  data: T;
}

/** A change of the connection's state. `code` and `reason` come with "closed". */
export type StateEvent =
  | { state: "connecting" }
  | { state: "open" }
  | {
      state: "closed";
      /** The WebSocket close code (1006 when the connection failed without one). */
      code: number;
      /** The close reason herald (or a backend's group/user close) gave. */
      reason: string;
      /** Whether the hub will reconnect (after a backoff), or has stopped for good. */
      reconnecting: boolean;
    };

/** After a resume: whether herald could replay everything missed in `group`. */
export interface RecoveredEvent {
  group: string;
  /** false: the gap could not be filled (history too short, or a new epoch); reload the group's state. */
  recovered: boolean;
}

/**
 * herald's error frames (`forbidden`, `invalid_group`, `too_many_subscriptions`, ...) and
 * the client's own `get_token_failed` / `connect_failed`.
 */
export interface ErrorEvent {
  error: string;
  message: string;
}

export interface HubEvents {
  state: StateEvent;
  recovered: RecoveredEvent;
  error: ErrorEvent;
}

/** A handler's membership of a group. */
export interface Subscription {
  readonly group: string;
  /** Stops calling the handler; the hub leaves the group when no handler is left. */
  unsubscribe(): void;
}

/** A connection to herald that outlives sockets: reconnects, resumes, refreshes tokens. */
export interface Hub {
  /** The current state. */
  readonly state: "connecting" | "open" | "closed";
  /** Calls `handler` for every notification of `group`, in offset order, once each. */
  subscribe<T = unknown>(group: string, handler: (notification: Notification<T>) => void): Subscription;
  /** Listens to an event; returns a function that stops listening. */
  on<K extends keyof HubEvents>(event: K, fn: (payload: HubEvents[K]) => void): () => void;
  /** Closes with 1000 for good (no reconnect). */
  close(): void;
}

/** Connects to herald's `ws(s)://host/ws`. */
export function connect(url: string, options?: ConnectOptions): Hub;

/** Whether herald's close-code table says to reconnect after `code`. */
export function shouldReconnect(code: number): boolean;

/** Full-jitter exponential backoff: the delay before attempt `attempt` (0-based), in ms. */
export function reconnectDelay(attempt: number, backoff?: Backoff, random?: () => number): number;

/** The `exp` claim of a JWT (seconds since the Unix epoch), or undefined. */
export function tokenExpiry(token: string): number | undefined;

/** The default {@link Heartbeat}: ping after 25 s of silence, give up 10 s later. */
export const DEFAULT_HEARTBEAT: Readonly<Heartbeat>;

/** The default {@link Backoff}: 500 ms to 30 s. */
export const DEFAULT_BACKOFF: Readonly<Backoff>;

/** `"herald.bearer."`: the subprotocol prefix that carries the token. */
export const BEARER_PROTOCOL_PREFIX: string;
