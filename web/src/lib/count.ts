// A count as a badge shows it: at most "99+".
export const count = (n: number): string => (n > 99 ? "99+" : String(n));
