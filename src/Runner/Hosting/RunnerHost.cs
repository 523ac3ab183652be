using System.Globalization;
using System.Management.Automation.Host;

namespace LoraPS.Runner.Hosting;

/// <summary>The PowerShell host of the loraps runner. <c>exit N</c> at the top level arrives in <see cref="SetShouldExit"/>.</summary>
public sealed class RunnerHost(Terminal terminal) : PSHost
{
    readonly RunnerHostUserInterface _ui = new(terminal);

    /// <summary>The code passed to <c>exit</c> at the top level, if the script called it.</summary>
    public int? ExitCode { get; private set; }

    public RunnerHostUserInterface RunnerUI => _ui;
    public override PSHostUserInterface UI => _ui;
    public override string Name => "LoraPS.Runner";
    public override Version Version => typeof(RunnerHost).Assembly.GetName().Version ?? new Version(0, 0);
    public override Guid InstanceId { get; } = Guid.NewGuid();
    public override CultureInfo CurrentCulture => CultureInfo.CurrentCulture;
    public override CultureInfo CurrentUICulture => CultureInfo.CurrentUICulture;

    public override void SetShouldExit(int exitCode) => ExitCode = exitCode;

    public override void EnterNestedPrompt() =>
        throw new NotSupportedException("The loraps runner has no interactive prompt (nested prompts, breakpoints and Suspend are unavailable).");
    public override void ExitNestedPrompt() => throw new NotSupportedException("The loraps runner has no nested prompt.");
    public override void NotifyBeginApplication() { }
    public override void NotifyEndApplication() { }
}
