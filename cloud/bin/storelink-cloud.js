#!/usr/bin/env node
// Runs the TypeScript sources directly (tsx); `npm run build` emits dist/ for images.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
