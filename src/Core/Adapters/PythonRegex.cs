using System.Collections.Concurrent;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraPS.Adapters;

/// <summary>
/// Python <c>re</c> semantics on top of .NET regular expressions. PEFT configs carry Python patterns
/// (<c>target_modules</c> as a string, <c>rank_pattern</c> keys), so they must mean here what they mean in PEFT.
/// </summary>
/// <remarks>
/// The two dialects agree on everything these patterns use in practice (classes, groups, alternation,
/// quantifiers, <c>\d</c>, <c>$</c>). The Python-only spellings are rewritten: <c>(?P&lt;name&gt;…)</c>,
/// <c>(?P=name)</c> and <c>\Z</c> (Python's absolute end, .NET's <c>\z</c>).
/// </remarks>
internal static class PythonRegex
{
    static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    /// <summary><c>re.fullmatch(pattern, text)</c>.</summary>
    public static Regex FullMatch(string pattern) => Compile(@"\A(?:" + Translate(pattern) + @")\z");

    /// <summary><c>re.match(pattern, text)</c>: anchored at the start only.</summary>
    public static Regex Match(string pattern) => Compile(@"\A(?:" + Translate(pattern) + ")");

    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="what"/> when the pattern does not compile.</summary>
    public static void Validate(string pattern, string what)
    {
        try { _ = FullMatch(pattern); }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{what} '{pattern}' is not a valid regular expression: {e.Message}", e);
        }
    }

    // Matching runs once per module and pattern while a model is scanned; compile each pattern once.
    static readonly ConcurrentDictionary<string, Regex> Compiled = new(StringComparer.Ordinal);

    static Regex Compile(string pattern) =>
        Compiled.GetOrAdd(pattern, p => new Regex(p, RegexOptions.CultureInvariant, MatchTimeout));

    /// <summary>Rewrites the Python-only constructs into their .NET equivalents, leaving escapes intact.</summary>
    internal static string Translate(string pattern)
    {
        var sb = new StringBuilder(pattern.Length);
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                char next = pattern[i + 1];
                sb.Append(next == 'Z' ? @"\z" : "\\" + next);
                i++;
            }
            else if (string.CompareOrdinal(pattern, i, "(?P<", 0, 4) == 0)
            {
                sb.Append("(?<");
                i += 3;
            }
            else if (string.CompareOrdinal(pattern, i, "(?P=", 0, 4) == 0)
            {
                int close = pattern.IndexOf(')', i);
                if (close < 0) { sb.Append(pattern, i, pattern.Length - i); break; }
                sb.Append(@"\k<").Append(pattern, i + 4, close - i - 4).Append('>');
                i = close;
            }
            else
            {
                sb.Append(c);
            }
        }
        return sb.ToString();
    }
}
