import type { LabApi, LabEvent } from '../../electron/lab/api-contract';

declare global {
  interface Window {
    hone: LabApi & {
      /** a dropped file's path (Electron shares it with the lab for reading); '' in a browser */
      pathForFile(file: File): Promise<string>;
      onEvent(listener: (e: LabEvent) => void): () => void;
      openFile(filters: { name: string; extensions: string[] }[]): Promise<string | null>;
      /** a folder picked in a dialog, shared with the lab for writing (Electron only: a browser
       *  types a folder inside those shared with `hone serve --allow`) */
      openFolder?(): Promise<string | null>;
    };
  }
}
export {};
