#!/usr/bin/env node
// The xtr CLI; the TypeScript build (npm run build) produces dist/router/cli.js.
import { cliMain } from '../dist/router/cli.js';

process.exitCode = await cliMain(process.argv.slice(2));
