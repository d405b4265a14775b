import type { LabApi } from '../../electron/lab/api';

declare global {
  interface Window {
    hone: LabApi & { pathForFile(file: File): string };
  }
}
export {};
