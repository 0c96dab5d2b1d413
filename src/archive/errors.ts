/** The one error of the archive room: the input is not a well-formed archive, and where it broke. */
export class ArchiveError extends Error {
  override readonly name = "ArchiveError";
  /**
   * @param offset the compressed byte offset (in the S2 stream) of the frame where the problem
   *   was found; for a problem in the tar or v2 structure, the frame that held the bad byte.
   */
  constructor(
    message: string,
    readonly offset?: number,
  ) {
    super(offset === undefined ? message : `${message} (at compressed offset ${offset})`);
  }
}
