/**
 * A consumer's deliveries, read from their ack subjects and checked to come in order: each the
 * consumer's next message, delivered for the first time. A gap or a redelivery would corrupt an
 * archive that is hashed or restored as it goes.
 */
import { BackupError, ErrorCode } from "../protocol/errors.ts";

export const isAckSubject = (reply: string | undefined): reply is string => reply?.startsWith("$JS.ACK.") ?? false;

export class DeliveryOrder {
  #delivered = 0;

  /** `what` names the read for errors: "reading $O.backups.C.<nuid>". */
  constructor(private readonly what: string) {}

  /**
   * Where the message acked on `reply` sits: its stream sequence, and the messages still pending
   * after it. `$JS.ACK.[domain.hash.]<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.token]`,
   * read from the end.
   */
  next(reply: string): { seq: number; pending: number } {
    const tokens = reply.split(".");
    const at = tokens.length >= 12 ? 6 : 4;
    const [delivered, seq, consumerSeq, , pending] = tokens.slice(at, at + 5).map(Number) as [number, number, number, number, number];
    if (delivered !== 1 || consumerSeq !== ++this.#delivered) {
      throw new BackupError(
        ErrorCode.Internal,
        `${this.what}: message ${seq} arrived out of order (delivery ${delivered}, consumer sequence ${consumerSeq}, expected ${this.#delivered})`,
      );
    }
    return { seq, pending };
  }
}
