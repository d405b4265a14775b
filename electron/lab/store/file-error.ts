// An error about one file the user gave: its message starts with the file's path, so every shell
// shows which file is wrong. The readers' own errors (GgufError, DataError) are FileErrors.
export class FileError extends Error {
  constructor(readonly file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = new.target.name;
  }
}
