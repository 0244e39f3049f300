/**
 * Invalid configuration, from the command line or from `createServer(options)`: one class, whose
 * message is one line naming the setting, so the CLI prints it as it is and exits 1.
 */

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  /** The setting at fault, as `--flag (ENV)` or `option.path`. */
  readonly setting: string

  constructor(setting: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.setting = setting
  }
}
