import type { LabApi, LabEvent } from '../../electron/lab/api-contract';

declare global {
  interface Window {
    hone: LabApi & {
      pathForFile(file: File): string;
      onEvent(listener: (e: LabEvent) => void): () => void;
      openFile(filters: { name: string; extensions: string[] }[]): Promise<string | null>;
    };
  }
}
export {};
