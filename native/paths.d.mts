export function ggmlBinsDir(root: string, variant?: string): string | null;
export function nodeLlamaCppDir(root: string): string;
export function llamaTag(root: string): string;
export function llamaSource(root: string, paths: string[]): string;
