import type { Algorithm } from '../config/schema.ts';
import type { SelectorFactory } from './types.ts';
import { createRoundRobin } from './round-robin.ts';
import { createLeastConnections } from './least-connections.ts';
import { createIpHash } from './ip-hash.ts';

/**
 * Selectors by config name. A new algorithm is one file plus one line here (and its name in
 * config/schema.ts's algorithmSchema); nothing else switches on the name.
 */
const registry: Record<Algorithm, SelectorFactory> = {
  'round-robin': createRoundRobin,
  'least-connections': createLeastConnections,
  'ip-hash': createIpHash,
};

export function selectorFactory(algorithm: Algorithm): SelectorFactory {
  return registry[algorithm];
}
