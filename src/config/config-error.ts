/** A configuration that cannot be used: the message names the key, and the file and line where known. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
