/** The shapes of repository search, shared by the SQL search (search.ts) and the in-memory index (search-memory.ts). */

export interface SearchVisibility {
  /** The caller; absent for anonymous searches (public repositories only). */
  readonly userId?: number;
  /** Admins see every repository. */
  readonly admin?: boolean;
}

export interface SearchResult {
  readonly namespace: string;
  readonly name: string;
  readonly description: string;
  readonly star_count: number;
  readonly private: boolean;
}

export interface SearchPage {
  /** All matches visible to the caller, on every page. */
  readonly total: number;
  readonly page: number;
  readonly pageSize: number;
  readonly results: SearchResult[];
}

export interface ParsedQuery {
  /** Lower-cased, trimmed query text. */
  readonly text: string;
  /** Letter/digit words, lower-cased. */
  readonly words: string[];
  /** Escaped LIKE pattern `text%`. */
  readonly prefixPattern: string;
  /** The text for the substring tier, if it may match a name. */
  readonly substring: string | undefined;
}
