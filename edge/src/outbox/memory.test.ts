import { describe, expect, test } from 'vitest';
import { outboxSuite } from './conformance.ts';
import { createMemoryStore } from './memory.ts';

outboxSuite({ test, describe, expect }, { name: 'memory', open: createMemoryStore });
