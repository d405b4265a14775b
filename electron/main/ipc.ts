// The lab API as Electron IPC channels, apart from Electron itself so tests can drive it.
import { LAB_METHODS, type Lab } from '../lab/api.js';
import { callConfined, type PathPolicy } from '../lab/path-policy.js';

/** every LabApi method becomes an IPC channel `lab:<method>`, its paths checked by `policy`;
 *  errors travel back as messages */
export function serveLab(lab: Lab, policy: PathPolicy, handle: (channel: string, f: (...args: unknown[]) => Promise<unknown>) => void) {
  for (const method of LAB_METHODS) handle(`lab:${method}`, (...args) => callConfined(lab, policy, method, args));
}
