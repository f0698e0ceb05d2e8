#!/usr/bin/env node
import { Command } from 'commander';
import { packageVersion } from '../version.js';
import { serveCommand } from './serve.js';
import { configCheckCommand } from './config-check.js';
import { dbCommand } from './db.js';
import { userCommand } from './user.js';
import { orgCommand, repoCommand } from './org.js';
import { htpasswdCommand } from './htpasswd.js';
import { importCommand } from './import.js';
import { migrateCommand } from './migrate.js';
import { gcCommand } from './gc.js';
import { webhookCommand } from './webhook.js';

const program = new Command('legacy-registry')
  .description('Docker v1 registry + index server, bridged to the v2/OCI distribution API')
  .version(packageVersion())
  .addCommand(serveCommand())
  .addCommand(configCheckCommand())
  .addCommand(dbCommand())
  .addCommand(userCommand())
  .addCommand(orgCommand())
  .addCommand(repoCommand())
  .addCommand(htpasswdCommand())
  .addCommand(importCommand())
  .addCommand(migrateCommand())
  .addCommand(gcCommand())
  .addCommand(webhookCommand())
  .showHelpAfterError();

await program.parseAsync(process.argv);
